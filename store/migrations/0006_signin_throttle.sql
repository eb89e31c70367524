-- 0006: failed sign-ins no longer lock an admin out. The web server slows down each address
-- that guesses (per address and admin, and per address overall, with back-off, in memory),
-- so that nobody can keep an admin out by guessing its password on purpose. failed_signins
-- stays: it counts failed sign-ins since the last success, from any address, for owners to
-- see.

ALTER TABLE admins DROP COLUMN locked_until;
