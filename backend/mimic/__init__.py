"""Mimic: speaking-style disentanglement for speech-driven 3D facial animation."""
