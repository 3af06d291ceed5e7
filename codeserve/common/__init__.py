"""What every layer shares, each defined once: domain errors and the one-line wording of a
validation failure (`errors`), settings helpers (`settings`), the chat message (`chat`), order
statistics (`stats`), the request record (`records`), the OpenAI error object (`error_object`),
the SSE reader (`sse`) and the reports' charts (`charts`)."""
