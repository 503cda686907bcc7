-- A sign-in alert names the session it reports. That session cannot mark the alert read (nor
-- does it count as unread there): otherwise whoever signed in with a stolen code could dismiss
-- the one alert meant to warn the owner's other devices.
ALTER TABLE notifications ADD COLUMN session_id TEXT;
