package store

import (
	"context"
	"testing"
)

func TestBackbonePrivateKey(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	k, err := s.BackbonePrivateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k.IsZero() {
		t.Fatal("zero key")
	}
	node, err := s.NodePrivateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k == node {
		t.Fatal("the backbone key is the node key")
	}
	gen, err := s.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.BackbonePrivateKey(ctx)
	if err != nil || again != k {
		t.Fatalf("second call: %v, same key %v", err, again == k)
	}
	if g, _ := s.Generation(ctx); g != gen {
		t.Errorf("loading the key moved the generation %d → %d", gen, g)
	}
	if err := s.SetSetting(ctx, settingBackbonePrivateKey, "x"); err == nil {
		t.Error("SetSetting changed the backbone key")
	}
	s.Close()
	s2 := openOpts(t, opts)
	if k2, err := s2.BackbonePrivateKey(ctx); err != nil || k2 != k {
		t.Fatalf("after reopening: %v, same key %v", err, k2 == k)
	}
	if r, err := Check(ctx, opts.Path, ""); err != nil || !r.OK() {
		t.Fatalf("Check = %+v, %v", r, err)
	}
}
