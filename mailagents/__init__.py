"""mailagents: email protocol building blocks.

Sans-I/O protocol cores (:mod:`mailagents.smtp`, :mod:`mailagents.pop3`,
:mod:`mailagents.sasl`); Maildir and mbox stores (:mod:`mailagents.store`) and user
credentials (:mod:`mailagents.userdb`); thin asyncio adapters (:mod:`mailagents.aio`);
and the agents composed from them (:mod:`mailagents.agents`: an MSA, local Maildir
delivery, a POP3 MAA), run from the command line with ``python -m mailagents``.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
