"""Errors that carry a message meant for the user (CLI exit code 2, GUI dialog)."""


class UserInputError(Exception):
    """Bad input from the user: the message names the file or field and what is allowed."""


class ConfigError(UserInputError):
    """An invalid configuration value; the message names the field and its allowed range."""


class DatasetError(UserInputError):
    """A dataset that cannot be used: missing folder, no readable images."""


class TrainingDiverged(Exception):
    """The loss became non-finite; the message says what to try."""
