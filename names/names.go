// Package names makes the names the project generates fit Kubernetes'
// length limits without ever colliding: a name that is too long is cut and
// suffixed with a hash of the whole, so two different inputs stay different.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Limits of Kubernetes names.
const (
	// MaxLabel is the limit of a DNS-1123 label (namespaces, label values,
	// most resource names that end up in a hostname).
	MaxLabel = 63
	// MaxSubdomain is the limit of a DNS-1123 subdomain (nodes, pods, most
	// objects).
	MaxSubdomain = 253
)

// hashLength is the number of hex digits of the suffix: 10 (40 bits) make an
// accidental collision between two long names of one namespace negligible.
const hashLength = 10

// Hash returns the first n hex digits of the SHA-256 of s: a short,
// stable suffix that tells generated names apart.
func Hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// Fit returns name unchanged if it has at most max characters; otherwise its
// first characters, a dash and a hash of the whole name, max characters in
// all. The result never ends with a dash or a dot before the hash.
func Fit(name string, max int) string {
	if len(name) <= max {
		return name
	}
	suffix := Hash(name, hashLength)
	prefix := strings.TrimRight(name[:max-hashLength-1], "-.")
	return prefix + "-" + suffix
}
