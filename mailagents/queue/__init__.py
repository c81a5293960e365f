"""The durable outbound queue (layer 2): the spool of messages waiting for delivery,
each recipient's state, and the retry arithmetic. It never opens a socket: the MTA's
delivery loop takes the due messages, tries them, and records what happened. See
:doc:`/queue`.

::

    queue = Queue("spool/queue")
    queued = queue.enqueue(envelope, message, now=time.time())  # durable: say 250
    for message in queue.due(time.time()):
        ...  # deliver message.due(now) recipients, then:
        queue.record(message.id, outcomes, now=time.time())
"""

from mailagents.queue._model import (
    Notice,
    NoticeKind,
    Outcome,
    OutcomeStatus,
    QueuedMessage,
    QueuedRecipient,
    RecipientState,
)
from mailagents.queue._queue import Queue, UnknownMessage
from mailagents.queue._records import QueueFileError
from mailagents.queue._schedule import RetrySchedule

__all__ = [
    "Notice",
    "NoticeKind",
    "Outcome",
    "OutcomeStatus",
    "Queue",
    "QueueFileError",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientState",
    "RetrySchedule",
    "UnknownMessage",
]
