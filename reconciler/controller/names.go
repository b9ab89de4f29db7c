package controller

import (
	"crypto/rand"
	"fmt"

	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// randomNames names pods the way the ReplicaSet controller does
// (<rs>-<5 safe characters>) and gives them random UUIDs.
type randomNames struct{}

func (randomNames) PodName(owner string) string { return owner + "-" + utilrand.String(5) }

func (randomNames) UID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
