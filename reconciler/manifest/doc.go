// Package manifest turns the files of one Git revision into the desired
// objects berth runs: it decodes Kubernetes manifests strictly into the
// k8s.io/api types, refuses kinds and fields berth cannot honour, applies the
// defaults Kubernetes applies, and validates every object and every
// reference between objects.
//
// A revision is accepted or refused whole. When it is refused, the error is an
// Errors value listing every problem found, each named by file, line, object
// and field, so a reviewer can fix them all in one commit. Fields berth accepts
// but does not act on produce warnings, never silent drops; docs/manifests.md
// has the full table.
//
// A Decoder caches decoded files by path and content hash, so a commit that
// touches one file re-decodes only that file; validation across files
// (duplicates, references, namespaces) still covers the whole revision.
package manifest
