"""A voiceivr cluster on one machine, for trying and testing scale-out: nodes in Linux network namespaces behind
a front Kamailio dispatcher, sharing one PostgreSQL database (``scripts/cluster``; docs/deploy.md, "More than one
node"). A harness of the wiring floor: nothing in the core imports it."""

from voiceivr.cluster.harness import Cluster, ClusterConfig, ClusterError, options_status
from voiceivr.cluster.netns import Network, NetworkError, can_make_namespaces

__all__ = ["Cluster", "ClusterConfig", "ClusterError", "Network", "NetworkError", "can_make_namespaces",
           "options_status"]
