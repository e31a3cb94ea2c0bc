"""One HTTP delivery attempt: Standard Webhooks signing, the HTTP client, what an answer means,
and the retry policy."""
