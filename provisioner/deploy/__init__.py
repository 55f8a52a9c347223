"""``invoke deploy``, ``rollback`` and ``deploy.status/history``: shipping a role's releases.

rollout.py moves the chosen hosts to a version (preflight everywhere, then host by host under
a lock: send, prepare, migrate once, move each instance, roll back every switched instance
when one fails, record); lock.py is the per-host deploy lock, history.py the per-host record.
What happens on the host is the role's (provisioner/release.py).
"""
