"""The host account of the container's uid: the owner of the secrets and volumes it reads.

A container run as ``--user 10001:10001`` reads its secret files and writes its volumes as uid
10001 whether or not the host knows that uid. Giving the uid a name (the app's) on the host
makes ``ls -l`` readable and stops a later ``useradd`` from handing the same uid to someone
else, who would then read the app's secrets. A name or uid already held otherwise is refused:
chowning to it would give the files to whoever holds it.
"""

from __future__ import annotations

from provisioner.commands import join, quote
from provisioner.step import Plan, Probed, Refused, Step


def plan_uid_account(name: str, uid: int, gid: int, output: str) -> Plan:
    """Create the system account ``name`` with exactly this uid and gid, or confirm it."""
    by_name, by_uid, group_by_name, group_by_gid = [*output.split("==\n"), "", "", ""][:4]
    user_fields = by_name.strip().split(":")
    if by_name.strip():
        if user_fields[2:4] == [str(uid), str(gid)]:
            return Plan("exists")
        raise Refused(f"user {name} exists with uid:gid {':'.join(user_fields[2:4])}, not "
                      f"{uid}:{gid} (app_user): the app's files would belong to another "
                      "identity than the container's. Change app_user or the account.")
    holder = by_uid.strip().split(":")[0]
    if holder:
        raise Refused(f"uid {uid} (app_user) belongs to user {holder} on this host: the app's "
                      "secrets would be theirs. Choose another app_user uid.")
    group_fields = group_by_name.strip().split(":")
    if group_by_name.strip() and group_fields[2] != str(gid):
        raise Refused(f"group {name} exists with gid {group_fields[2]}, not {gid} (app_user).")
    gid_holder = group_by_gid.strip().split(":")[0]
    if gid_holder and gid_holder != name:
        raise Refused(f"gid {gid} (app_user) belongs to group {gid_holder} on this host; "
                      "choose another app_user gid.")
    action = "" if group_by_name.strip() else join("groupadd", "--system", "--gid", gid,
                                                   name) + " && "
    action += join("useradd", "--system", "--uid", uid, "--gid", gid, "--no-create-home",
                   "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name)
    return Plan(f"created (system user {uid}:{gid}, no login)", action=action)


def ensure_uid_account(name: str, uid: int, gid: int) -> Step:
    def decide(probed: Probed) -> Plan:
        return plan_uid_account(name, uid, gid, probed.output)

    probe = "; echo ==; ".join(f"getent {database} {quote(key)} || true" for database, key in
                               (("passwd", name), ("passwd", uid), ("group", name),
                                ("group", gid)))
    return Step(f"system user {name} ({uid}:{gid}, the container's)", probe, decide)
