"""The package's version, in a module of its own: the modules that record it (the manifest, each
shard's attributes, the command's --version and bug log) import it from here, not from the package's
``__init__``, whose lazy names import them back."""

__version__ = "0.1.0"
