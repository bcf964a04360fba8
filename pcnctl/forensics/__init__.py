"""The read side: finding the threat and the attacker, and keeping the evidence.

Edifice has no cross-mailbox search route (edifice-api.md §3), so messages are searched in:

* ``mailstore``: read-only SQL on the conversation tables (``conversation.messages``,
  ``conversation.usermessages``, attachments), PostgreSQL in production, SQLite in the lab;
* ``events``: the event store API, who created messages, when, from which IP.

``search``, ``hunt`` and ``senders`` work on them; ``evidence`` preserves what a purge is about to remove.
"""
