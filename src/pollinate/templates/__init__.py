"""The apps ``pollinate new`` writes: one folder of ``.tmpl`` files per template.

Each ``.tmpl`` file is filled in with :class:`string.Template` (``$name``, ``$package``,
``$pollinate_version``) and written without its suffix; the folder ``package`` becomes the
app's Python package and ``dot-gitignore`` becomes ``.gitignore``. A template built on
another (``pytorch-dpsgd`` on ``pytorch``, see ``_BASES`` in ``cli/_new.py``) holds only the
files it changes.
"""
