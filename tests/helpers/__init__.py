"""Reusable test helpers (real local servers, never mocks of wbray itself)."""
