"""The gateway (`codeserve.server`): OpenAI-compatible routes, the serving layer with OpenAI
semantics, and the engines below it (managed vLLM children or upstream replicas)."""
