"""Pieces of the HTTP service, one concern per module; ``service.app.create_app`` puts them together."""
