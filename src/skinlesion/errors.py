"""The base of every error skinlesion reports to a user as a message (no traceback)."""


class SkinlesionError(Exception):
    """A problem with the user's input or environment; the message names it and the remedy."""
