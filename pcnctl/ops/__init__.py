"""The operations that change an ENT (accounts, profile blocks, messaging blocks, purges, banners), the
run context they share, and resume and rollback."""
