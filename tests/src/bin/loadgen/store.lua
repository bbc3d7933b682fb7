-- `POST /api/keys` at manager: one new secret per request (one RSA signature in manager's
-- token, one durable commit in vault).
wrk.method = "POST"
wrk.body = '{"user_id":"bench","key_data":"a benchmark secret of about fifty bytes, 0123456"}'
wrk.headers["Content-Type"] = "application/json"
