package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth.dev/berth/api"
	"berth.dev/berth/reconciler/manifest"
	"berth.dev/berth/reconciler/services"
	"berth.dev/berth/reconciler/store"
)

// sourceLoop fetches on the poll interval, on a webhook or `berth sync`, and
// on folder changes. A fetch or validation failure leaves the applied
// revision, and so everything running, untouched.
func (c *Controller) sourceLoop(ctx context.Context) {
	ticker := time.NewTicker(c.cfg.PollInterval)
	defer ticker.Stop()
	var waiting []chan api.SyncResult
	fetch := func() {
		res := c.fetchAndApply(ctx)
		for _, w := range waiting {
			w <- res
		}
		waiting = nil
	}
	fetch()
	for {
		select {
		case <-ctx.Done():
			for _, w := range waiting {
				w <- api.SyncResult{Error: ctx.Err().Error()}
			}
			return
		case <-ticker.C:
			fetch()
		case <-c.fetchSoon:
			fetch()
		case w := <-c.fetchReqs:
			waiting = append(waiting, w)
			// Drain requests that arrived together: one fetch answers all.
			for more := true; more; {
				select {
				case w := <-c.fetchReqs:
					waiting = append(waiting, w)
				default:
					more = false
				}
			}
			fetch()
		}
	}
}

// Sync fetches the source now and waits for the outcome.
func (c *Controller) Sync(ctx context.Context) api.SyncResult {
	w := make(chan api.SyncResult, 1)
	select {
	case c.fetchReqs <- w:
	case <-ctx.Done():
		return api.SyncResult{Error: ctx.Err().Error()}
	}
	select {
	case res := <-w:
		return res
	case <-ctx.Done():
		return api.SyncResult{Error: ctx.Err().Error()}
	}
}

// RequestFetch asks for a fetch without waiting (webhooks, folder events).
// Requests made while one is pending coalesce.
func (c *Controller) RequestFetch() {
	select {
	case c.fetchSoon <- struct{}{}:
	default:
	}
}

func (c *Controller) fetchAndApply(ctx context.Context) api.SyncResult {
	rev, err := c.cfg.Source.Fetch(ctx)
	now := c.cfg.Now()
	if err != nil {
		c.mu.Lock()
		c.fetchErr = fmt.Sprintf("fetch %s: %v", c.cfg.Source, err)
		c.lastFetch = now
		res := c.syncResultLocked()
		c.mu.Unlock()
		c.log.Warn("fetch failed; keeping the applied revision", "source", c.cfg.Source.String(), "err", err)
		return res
	}
	info := api.Revision{ID: rev.ID, Subject: rev.Subject, Author: rev.Author, Time: rev.Time}

	c.mu.Lock()
	c.fetchErr = ""
	c.lastFetch = now
	c.head = &info
	same := c.appliedID() == rev.ID || (c.refused != "" && c.headRefusedID == rev.ID)
	c.mu.Unlock()
	if same {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.syncResultLocked()
	}

	set, decodeErr := c.decoder.Load(rev.Files)
	var allocations services.Allocations
	if decodeErr == nil {
		// Addresses are part of the revision's validity: a Service asking
		// for one it cannot have refuses the revision like any other error.
		c.mu.Lock()
		var problems []services.Problem
		allocations, problems = services.Allocate(set.Services, c.cfg.ServiceCIDR, c.allocations)
		c.mu.Unlock()
		if len(problems) > 0 {
			decodeErr = serviceDiagnostics(set, problems)
		}
	}
	var b store.Batch
	entry := api.HistoryEntry{Revision: info, Time: now, Outcome: api.OutcomeApplied}
	if decodeErr != nil {
		entry.Outcome = api.OutcomeRefused
		entry.Message = decodeErr.Error()
	} else {
		b.Put(store.Meta, metaApplied, appliedRevision{Revision: info, Files: rev.Files, Applied: now})
		c.mu.Lock()
		for k := range c.allocations {
			if _, ok := allocations[k]; !ok {
				b.Delete(store.Allocations, k)
			}
		}
		for k, v := range allocations {
			if c.allocations[k] != v {
				b.Put(store.Allocations, k, v)
			}
		}
		c.mu.Unlock()
		if len(set.Warnings) > 0 {
			entry.Message = fmt.Sprintf("%d warning(s)", len(set.Warnings))
		}
	}
	b.Append(store.History, entry)
	if err := c.cfg.Store.Write(ctx, &b); err != nil {
		c.log.Error("record revision", "revision", rev.ID, "err", err)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.fetchErr = fmt.Sprintf("record revision %s: %v", short(rev.ID), err)
		return c.syncResultLocked()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if decodeErr != nil {
		c.refused = decodeErr.Error()
		c.headRefusedID = rev.ID
		var diags manifest.Errors
		n := 1
		if errors.As(decodeErr, &diags) {
			n = len(diags)
		}
		c.log.Error("revision refused; the applied revision keeps running", "revision", short(rev.ID), "subject", rev.Subject, "errors", n, "err", decodeErr)
		return c.syncResultLocked()
	}
	c.refused, c.headRefusedID = "", ""
	c.desired = set
	c.allocations = allocations
	c.services = services.Apply(set.Services, allocations)
	c.applied = &appliedRevision{Revision: info, Files: rev.Files, Applied: now}
	for _, w := range set.Warnings {
		c.log.Warn("manifest warning", "revision", short(rev.ID), "warning", w.String())
	}
	c.log.Info("revision applied", "revision", short(rev.ID), "subject", rev.Subject, "author", rev.Author)
	c.Kick()
	return c.syncResultLocked()
}

func (c *Controller) syncResultLocked() api.SyncResult {
	var res api.SyncResult
	if c.applied != nil {
		r := c.applied.Revision
		res.Applied = &r
	}
	if c.head != nil {
		h := *c.head
		res.Head = &h
	}
	switch {
	case c.fetchErr != "":
		res.Error = c.fetchErr
	case c.refused != "":
		res.Error = fmt.Sprintf("revision %s refused:\n%s", short(c.headRefusedID), c.refused)
	}
	return res
}

// serviceDiagnostics names the file and line of each Service whose
// allocation failed, like every other refusal.
func serviceDiagnostics(set *manifest.Set, problems []services.Problem) manifest.Errors {
	var out manifest.Errors
	for _, p := range problems {
		src := set.Sources[manifest.Key("Service", p.Namespace, p.Name)]
		out = append(out, manifest.Diagnostic{
			File: src.File, Line: src.Line, Kind: "Service", Namespace: p.Namespace, Name: p.Name,
			Field: p.Field, Message: p.Message,
		})
	}
	return out
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
