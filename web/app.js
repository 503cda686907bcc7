// The web client (see issue: web client).
