"""The watcher: follows one ENT every few seconds, pages the on-call team at the first threat, and may run a
response two administrators approved in advance, within the limits they signed (docs/watch.md).

Modules: :mod:`~pcnctl.watch.records` (what the watcher keeps, typed), :mod:`~pcnctl.watch.state` (its
tables in the state store), :mod:`~pcnctl.watch.detectors` (the audit's checks, run incrementally),
:mod:`~pcnctl.watch.pacing` (how often it may call a slow ENT), :mod:`~pcnctl.watch.paging` (e-mail and
webhook pages, in French), :mod:`~pcnctl.watch.policy` (the signed response policy and its limits),
:mod:`~pcnctl.watch.response` (the pre-approved response, run through the playbook runner) and
:mod:`~pcnctl.watch.watcher` (the loop).
"""
