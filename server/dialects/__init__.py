"""API dialects of IDE plugins, each a thin translator onto the one serving path
(`CompletionService.serve`): Mistral's FIM API (`mistral`), Ollama's API (`ollama`), Text
Generation Inference's (`tgi`) and llama.cpp's /infill (`llama_cpp`). `routes` maps their HTTP
routes; `common` holds what they share."""
