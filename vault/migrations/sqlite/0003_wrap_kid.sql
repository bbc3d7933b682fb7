-- The wrapping key a row's content key is wrapped to now. The envelope's protected
-- header keeps the kid it was sealed to (it is authenticated data and cannot change
-- without the plaintext); `rewrap` moves content keys to the newest key and records it
-- here. NULL: the header's kid.
ALTER TABLE secrets ADD COLUMN wrap_kid TEXT;
