"""The dev policy ``relman dev up`` writes for the local stack: the demo's people and groups.

It lets the example plans (``examples/demo.yaml``, ``examples/rollback-demo.yaml``) run
with signed decisions: alice requests and operates, bob and carol approve finance waves,
dave and erin operations waves, frank and grace web waves. It is marked ``dev: true`` so
relman can say a dev policy is in use; it must never reach a real worker.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.policy import Policy, parse_policy

DEV_POLICY_VERSION = "dev"
# The person who requests the demo releases and may operate them.
DEV_REQUESTER = "alice"
DEV_GROUPS: dict[str, list[str]] = {
    "finance-cab": ["bob", "carol"],
    "ops-leads": ["dave", "erin"],
    "web-cab": ["frank", "grace"],
    "release-managers": [DEV_REQUESTER],
}
# department -> the groups that approve its waves, for every application.
DEV_APPROVERS: dict[str, list[str]] = {
    "finance": ["finance-cab"],
    "operations": ["ops-leads"],
    "web": ["web-cab"],
}
DEV_PEOPLE = tuple(dict.fromkeys(m for members in DEV_GROUPS.values() for m in members))
# moto's account: every role the local AWS endpoint has lives in it.
DEV_ACCOUNT = "123456789012"
DEV_WEBHOOK_HOSTS = ["localhost", "127.0.0.1"]


def dev_policy(keys: Mapping[str, str | list[str]]) -> Policy:
    """A dev policy for the people in ``keys`` (person id -> OpenSSH public key or keys).

    Groups keep only the people given; anyone given who is in no demo group is a person
    without rights (useful to show a refusal).
    """
    people = [
        {
            "id": person,
            "name": person.capitalize(),
            "ssh_keys": [key] if isinstance(key, str) else list(key),
        }
        for person, key in keys.items()
    ]
    groups = {group: [m for m in members if m in keys] for group, members in DEV_GROUPS.items()}
    return parse_policy(
        {
            "version": DEV_POLICY_VERSION,
            "description": "written by `relman dev up` for the local stack; not for production",
            "dev": True,
            "people": people,
            "groups": groups,
            "operator_groups": ["release-managers"],
            "applications": {
                "*": {
                    "approvers": DEV_APPROVERS,
                    "aws_accounts": [DEV_ACCOUNT],
                    "webhook_hosts": DEV_WEBHOOK_HOSTS,
                    # http checks of local plans probe services on this machine.
                    "check_hosts": DEV_WEBHOOK_HOSTS,
                }
            },
        },
        "<dev policy>",
    )
