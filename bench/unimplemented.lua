-- wrk script: a call the core answers at once (no database): transport cost only.
wrk.method = "POST"
wrk.path = "/gitpod.v1.RunnerConfigurationService/GetHostAuthenticationToken"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id": "d2c94c27-3b76-4a42-b88c-95a85e392c68"}'
