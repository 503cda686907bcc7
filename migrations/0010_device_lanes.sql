-- A browser that once signed in to an account carries a device cookie, and its codes for that
-- phone are counted in a lane of their own: `phone_limits.phone` holds the lane's key (the phone
-- alone, or the phone and the device; `<phone>#all` counts the phone's codes across its lanes),
-- and each challenge remembers the lane it was sent in, so its wrong tries back off that lane
-- only. Rows from before have no lane: theirs is the phone.
ALTER TABLE otp_challenges ADD COLUMN lane TEXT;
ALTER TABLE second_factor_challenges ADD COLUMN lane TEXT;
