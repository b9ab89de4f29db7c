package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"

	"berth.dev/berth/api"
)

// Chains berth owns. Every name starts with chainPrefix, which is how Cleanup
// and the stale-chain sweep tell berth's chains from everyone else's
// (netavark's NETAVARK-*, a firewall's, an administrator's).
const (
	chainPrefix = "BERTH-"

	chainServices    = "BERTH-SERVICES"    // nat and filter
	chainNodePorts   = "BERTH-NODEPORTS"   // nat
	chainMarkMasq    = "BERTH-MARK-MASQ"   // nat
	chainPostrouting = "BERTH-POSTROUTING" // nat
	chainFirewall    = "BERTH-FIREWALL"    // filter

	svcPrefix = "BERTH-SVC-"
	sepPrefix = "BERTH-SEP-"
	extPrefix = "BERTH-EXT-"
)

// masqMark is the packet mark bit that asks BERTH-POSTROUTING to
// masquerade. kube-proxy uses the same bit (14); netavark uses 0x2000 for
// its own port forwarding, so the two never collide.
const masqMark = "0x4000"

// servicePortName names a service port the way kube-proxy does
// ("ns/name:port", or "ns/name" for an unnamed port). It is the text of the
// rules' comments and the seed of the chain hashes.
func servicePortName(svc *api.Service, port *api.ServicePort) string {
	if port.Name == "" {
		return svc.Namespace + "/" + svc.Name
	}
	return svc.Namespace + "/" + svc.Name + ":" + port.Name
}

// portProtoHash is kube-proxy's chain hash: the first 16 characters of the
// base32 SHA-256 of the service port name, the lower-case protocol and, for
// endpoint chains, "ip:port". Same scheme, so an operator who knows
// kube-proxy's chains can read berth's.
func portProtoHash(spn, proto, endpoint string) string {
	sum := sha256.Sum256([]byte(spn + strings.ToLower(proto) + endpoint))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

func svcChain(spn, proto string) string { return svcPrefix + portProtoHash(spn, proto, "") }
func extChain(spn, proto string) string { return extPrefix + portProtoHash(spn, proto, "") }
func sepChain(spn, proto, endpoint string) string {
	return sepPrefix + portProtoHash(spn, proto, endpoint)
}

// hostPort joins an IPv4 address and a port.
func hostPort(ip string, port int32) string {
	return ip + ":" + strconv.Itoa(int(port))
}

// isServiceChain reports whether a chain is one of the per-service chains
// berth creates and deletes as Services come and go.
func isServiceChain(name string) bool {
	return strings.HasPrefix(name, svcPrefix) || strings.HasPrefix(name, sepPrefix) ||
		strings.HasPrefix(name, extPrefix)
}
