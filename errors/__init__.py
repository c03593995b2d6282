"""What a user can fix: the one base class every entry point catches to print a line instead of a traceback.

Each package's errors (settings, prompts, the model, exports, the store, eval sets, training data)
derive from `UserError` as well as from ValueError or RuntimeError; `python -m app`, `python -m evals`
and the training commands catch `UserError` once, print `error: <message>` and exit with 2.
"""


class UserError(Exception):
    """A problem the message explains and the user can fix: a setting, a file, a busy folder, a missing model."""
