"""mailagents: email protocol building blocks.

Sans-I/O protocol cores (:mod:`mailagents.smtp`, :mod:`mailagents.sasl`), thin asyncio
adapters (:mod:`mailagents.aio`) and, later, stores and the agents composed from them.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
