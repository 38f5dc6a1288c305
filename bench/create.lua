-- wrk script: Connect JSON Create with a fresh host per request, so every
-- call inserts a new token (the common path), as the older SDKs send it.
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"runnerId": "d2c94c27-3b76-4a42-b88c-95a85e392c68", "userId": "f53d2330-3795-4c5d-a1f3-453121af9c60", ' ..
    '"host": "git-%d-%d-%d.example.com", "token": "gho_xxxxxxxxxxxx", "refreshToken": "ghr_xxxxxxxxxxxx", ' ..
    '"source": "HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH", "expiresAt": "2030-01-01T00:00:00+00:00"}',
    tid or 0, counter, math.random(1, 1000000000))
  return wrk.format("POST", "/gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken",
    {["Content-Type"] = "application/json"}, body)
end
