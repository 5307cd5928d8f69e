"""DiracX on k3s, seen from the API server: wait, bounded, for a rollout to finish or fail.

k3s installs the `diracx` chart by itself (its helm-controller runs a `helm-install-<chart>`
Job for each `HelmChart` object); the toolkit only asks the API server how that went.

- `release.k3s.rollout`: `wait_for_rollout` (the wait) and its result and error types;
- `release.k3s.kubeconfig`: the one kubeconfig file given, checked before the client reads it;
- `release.k3s.api`: the few API calls made, through the `kubernetes` client, as plain JSON;
- `release.k3s.status`: what a Job, a Deployment or a Pod's JSON says (pure functions).

Nothing here is imported by the command line at start: the `kubernetes` client is heavy.
"""
