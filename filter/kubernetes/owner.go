package kubernetes

import (
	"strconv"
	"strings"
)

// Owner is the workload a pod belongs to.
type Owner struct{ Kind, Name string }

// OwnerOf derives the workload from the pod's controller reference without
// reading ReplicaSets or Jobs (no RBAC beyond pods and namespaces):
//
//   - a ReplicaSet named <deployment>-<pod-template-hash>, where the pod
//     carries that pod-template-hash label, is the Deployment <deployment>
//     (the Deployment controller names its ReplicaSets so); a ReplicaSet
//     without the label or whose name does not end with it stays a
//     ReplicaSet (one created by hand);
//   - a Job named <cronjob>-<n>, n a scheduled time in minutes since the
//     epoch (the CronJob controller names its Jobs so: 8 or more digits), is
//     the CronJob <cronjob>; a Job created by hand with such a name is
//     taken for a CronJob's too (the limit of deriving);
//   - anything else (StatefulSet, DaemonSet, Node for static pods, a custom
//     controller) is the reference as it is.
//
// kind is "" when the pod has no controller.
func OwnerOf(refKind, refName, podTemplateHash string) Owner {
	switch refKind {
	case "":
		return Owner{}
	case "ReplicaSet":
		if podTemplateHash != "" {
			if d, ok := strings.CutSuffix(refName, "-"+podTemplateHash); ok && d != "" {
				return Owner{Kind: "Deployment", Name: d}
			}
		}
	case "Job":
		if i := strings.LastIndexByte(refName, '-'); i > 0 {
			n := refName[i+1:]
			if len(n) >= 8 && isDigits(n) {
				if _, err := strconv.ParseInt(n, 10, 64); err == nil {
					return Owner{Kind: "CronJob", Name: refName[:i]}
				}
			}
		}
	}
	return Owner{Kind: refKind, Name: refName}
}
