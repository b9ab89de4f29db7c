package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestWriteListGetDeleteAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Put(Pods, "default/b", rec{"b", 2})
	b.Put(Pods, "default/a", rec{"a", 1})
	b.Append(History, rec{"first", 1})
	b.Append(History, rec{"second", 2})
	if err := db.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var del Batch
	del.Delete(Pods, "default/b")
	del.Delete(Pods, "default/missing")
	if err := db.Write(ctx, &del); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pods, err := List[rec](ctx, db, Pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != "a" {
		t.Fatalf("pods after reopen = %+v, want only a", pods)
	}
	hist, err := List[rec](ctx, db, History)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Name != "first" || hist[1].Name != "second" {
		t.Fatalf("history = %+v, want first then second", hist)
	}
	var got rec
	if err := db.Get(ctx, Pods, "default/a", &got); err != nil || got.N != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := db.Get(ctx, Pods, "default/b", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get deleted key: err = %v, want ErrNotFound", err)
	}
}

func TestBatchIsAtomic(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b Batch
	b.Put(Pods, "default/a", rec{"a", 1})
	b.Put(Kind("nope"), "x", rec{}) // fails: the whole batch must roll back
	if err := db.Write(ctx, &b); err == nil {
		t.Fatal("write to an unknown kind succeeded")
	}
	pods, err := List[rec](ctx, db, Pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 0 {
		t.Fatalf("a failed batch left %d pods behind", len(pods))
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("a second Open of a locked store succeeded")
	}
}
