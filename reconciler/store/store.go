// Package store persists the few facts the controller cannot re-derive from
// Git or from the agents: ReplicaSets (revision history), pods and their node
// bindings, rollout conditions, applied revisions and allocations. Values are
// JSON documents grouped by Kind; writes are batched into one transaction so a
// crash never leaves half a plan applied.
//
// DB is backed by go.etcd.io/bbolt. The controller depends on the small
// Reader/Writer interfaces it defines, so another engine (etcd) can stand in.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kind names a collection of values.
type Kind string

// The collections the controller keeps.
const (
	ReplicaSets      Kind = "replicasets"
	Pods             Kind = "pods"
	DeploymentStatus Kind = "deploymentstatus"
	History          Kind = "history"
	Meta             Kind = "meta"
	Allocations      Kind = "allocations"
	FailedTemplates  Kind = "failedtemplates"
	Nodes            Kind = "nodes"
)

var allKinds = []Kind{ReplicaSets, Pods, DeploymentStatus, History, Meta, Allocations, FailedTemplates, Nodes}

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("not found")

// DB is the embedded store.
type DB struct {
	bolt *bolt.DB
}

// Open opens (creating if needed) the store file at path.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	// A second berth on the same data dir would corrupt nothing (bbolt locks
	// the file) but would wait forever; fail fast instead.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s (is another berth using this data dir?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, k := range allKinds {
			if _, err := tx.CreateBucketIfNotExists([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise store %s: %w", path, err)
	}
	return &DB{bolt: db}, nil
}

// Close releases the file.
func (d *DB) Close() error { return d.bolt.Close() }

// Batch collects writes applied atomically by Write.
type Batch struct {
	ops []op
}

type op struct {
	kind   Kind
	key    string
	value  any // nil means delete
	append bool
}

// Put stores v (JSON-encoded) under key.
func (b *Batch) Put(kind Kind, key string, v any) {
	b.ops = append(b.ops, op{kind: kind, key: key, value: v})
}

// Delete removes key; deleting a missing key is not an error.
func (b *Batch) Delete(kind Kind, key string) {
	b.ops = append(b.ops, op{kind: kind, key: key})
}

// Append stores v under the next sequence number of kind, so List returns
// appended values in order.
func (b *Batch) Append(kind Kind, v any) {
	b.ops = append(b.ops, op{kind: kind, value: v, append: true})
}

// Len is the number of writes in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Write applies the batch in one transaction.
func (d *DB) Write(ctx context.Context, b *Batch) error {
	if b == nil || len(b.ops) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.bolt.Update(func(tx *bolt.Tx) error {
		for _, o := range b.ops {
			bucket := tx.Bucket([]byte(o.kind))
			if bucket == nil {
				return fmt.Errorf("unknown kind %q", o.kind)
			}
			key := o.key
			if o.append {
				seq, err := bucket.NextSequence()
				if err != nil {
					return err
				}
				key = fmt.Sprintf("%020d", seq)
			}
			if o.value == nil {
				if err := bucket.Delete([]byte(key)); err != nil {
					return fmt.Errorf("delete %s/%s: %w", o.kind, key, err)
				}
				continue
			}
			data, err := json.Marshal(o.value)
			if err != nil {
				return fmt.Errorf("encode %s/%s: %w", o.kind, key, err)
			}
			if err := bucket.Put([]byte(key), data); err != nil {
				return fmt.Errorf("put %s/%s: %w", o.kind, key, err)
			}
		}
		return nil
	})
}

// Each calls fn for every value of kind, in key order.
func (d *DB) Each(ctx context.Context, kind Kind, fn func(key string, value []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.bolt.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket([]byte(kind))
		if bucket == nil {
			return fmt.Errorf("unknown kind %q", kind)
		}
		return bucket.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

// Get decodes the value under key into v.
func (d *DB) Get(ctx context.Context, kind Kind, key string, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.bolt.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket([]byte(kind))
		if bucket == nil {
			return fmt.Errorf("unknown kind %q", kind)
		}
		data := bucket.Get([]byte(key))
		if data == nil {
			return fmt.Errorf("%s/%s: %w", kind, key, ErrNotFound)
		}
		return json.Unmarshal(data, v)
	})
}

// Iterator is the read side DB offers, so List works over any engine.
type Iterator interface {
	Each(ctx context.Context, kind Kind, fn func(key string, value []byte) error) error
}

// List decodes every value of kind, in key order.
func List[T any](ctx context.Context, it Iterator, kind Kind) ([]T, error) {
	var out []T
	err := it.Each(ctx, kind, func(key string, value []byte) error {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", kind, key, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
