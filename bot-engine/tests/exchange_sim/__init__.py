"""Local stand-ins for exchanges, speaking their real wire protocols over real HTTP so that
the real client library (ccxt) can be pointed at them."""
