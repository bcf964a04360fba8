"""Where messages are searched: Edifice has no cross-mailbox search route (edifice-api.md §3).

* ``mailstore``: read-only SQL on the conversation tables (``conversation.messages``,
  ``conversation.usermessages``, attachments), PostgreSQL in production, SQLite in the lab;
* ``events``: the event store API, who created messages, when, from which IP.
"""
