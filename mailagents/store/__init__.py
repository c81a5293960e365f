"""Mail stores: Maildir and mbox behind one mailbox model (see :doc:`/stores`).

This layer touches the disk; its methods block. Async code calls them through the
store's own executor (:meth:`Store.run`). Every write through any store object tells
the process's change hub (:data:`HUB`), so sessions watching a folder learn of it
at once (:func:`subscribe`). Each folder keeps a message cache for IMAP FETCH, SEARCH
and SORT (:class:`FolderCache`, :meth:`Folder.cached`), and each store its folders'
STATUS numbers (:class:`StatusCache`).
"""

from mailagents.store._cache import FolderCache, build_entry
from mailagents.store._cache_format import CachedMessage, CacheFormatError
from mailagents.store._cache_status import StatusCache
from mailagents.store._cache_subject import base_subject, sent_date
from mailagents.store._hub import HUB, ChangeHub, Subscription, folder_key, notify, subscribe
from mailagents.store._limits import Limits, MessageTooBigError, QuotaExceededError
from mailagents.store._model import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SPECIAL_USE,
    SYSTEM_FLAGS,
    AppendResult,
    AppendWriter,
    Changes,
    CopyResult,
    FlagMode,
    Folder,
    FolderExistsError,
    FolderInfo,
    FolderNotFoundError,
    FolderStatus,
    InvalidFolderNameError,
    MessageInfo,
    MessageNotFoundError,
    Store,
    StoreError,
    apply_flags,
    check_keyword,
    same_flags,
)
from mailagents.store._resolver import MailboxFormat, StoreResolver, safe_name
from mailagents.store._session_lock import MailboxInUseError, SessionLock
from mailagents.store.maildir import MaildirFolder, MaildirStore
from mailagents.store.mbox import MboxFolder, MboxStore

__all__ = [
    "HUB",
    "ChangeHub",
    "Subscription",
    "folder_key",
    "notify",
    "subscribe",
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "SEEN",
    "SPECIAL_USE",
    "SYSTEM_FLAGS",
    "AppendResult",
    "AppendWriter",
    "CacheFormatError",
    "CachedMessage",
    "Changes",
    "CopyResult",
    "FlagMode",
    "Folder",
    "FolderCache",
    "FolderExistsError",
    "FolderInfo",
    "FolderNotFoundError",
    "FolderStatus",
    "InvalidFolderNameError",
    "Limits",
    "MailboxFormat",
    "MailboxInUseError",
    "MaildirFolder",
    "MaildirStore",
    "MboxFolder",
    "MboxStore",
    "MessageInfo",
    "MessageNotFoundError",
    "MessageTooBigError",
    "QuotaExceededError",
    "SessionLock",
    "StatusCache",
    "Store",
    "StoreResolver",
    "StoreError",
    "apply_flags",
    "base_subject",
    "build_entry",
    "check_keyword",
    "safe_name",
    "same_flags",
    "sent_date",
]
