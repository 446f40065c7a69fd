"""Events: the catalogue of types, publishing with fan-out, idempotency and coalescing."""
