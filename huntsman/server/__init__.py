"""The hunting server: a FastAPI app shaped like Defender's REST API (nothing imports it)."""
