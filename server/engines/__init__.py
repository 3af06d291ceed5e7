"""The engine seam: everything below the serving layer that talks to vLLM servers."""
