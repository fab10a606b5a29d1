"""Test helpers for convkit and its plugins (a loopback OpenAI-protocol server and fixtures)."""
