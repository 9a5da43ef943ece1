"""Search attributes relman keeps current on each release, for `relman list` and `relman approvals`.

Imports only ``temporalio.common``, so workflows import it inside the sandbox.
"""

from temporalio.common import SearchAttributeKey

SA_APPLICATION = SearchAttributeKey.for_keyword("RelmanApplication")
SA_VERSION = SearchAttributeKey.for_keyword("RelmanVersion")
SA_REQUESTER = SearchAttributeKey.for_keyword("RelmanRequester")
SA_PHASE = SearchAttributeKey.for_keyword("RelmanPhase")
SA_APPROVERS = SearchAttributeKey.for_keyword_list("RelmanApprovers")
SA_DEPARTMENTS = SearchAttributeKey.for_keyword_list("RelmanDepartments")
# Short digests of the resources a release deploys (see workflows.release_state.target_keys).
SA_TARGETS = SearchAttributeKey.for_keyword_list("RelmanTargets")
SEARCH_ATTRIBUTES = (
    SA_APPLICATION,
    SA_VERSION,
    SA_REQUESTER,
    SA_PHASE,
    SA_APPROVERS,
    SA_DEPARTMENTS,
    SA_TARGETS,
)
