"""The AI assistant: knowledge base (embeddings, retrieval), the caller's trading context,
and the chat engine (Claude, or an offline mode without a language model)."""
