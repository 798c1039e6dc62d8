package worker

import "testing"

func TestBudget(t *testing.T) {
	b := newBudget(4)
	if n := b.grant("a", 3, 1); n != 3 {
		t.Fatalf("a got %d allocations of 1 thread, want 3", n)
	}
	// Two threads each: one allocation fits beside a's three processors.
	if n := b.grant("b", 2, 2); n != 0 {
		t.Fatalf("b got %d allocations of 2 threads with 1 processor free, want 0", n)
	}
	freed := b.freed()
	if n := b.grant("a", 1, 1); n != 1 {
		t.Fatalf("a shrunk to %d, want 1", n)
	}
	select {
	case <-freed:
	default:
		t.Fatal("shrinking a did not signal freed processors")
	}
	if n := b.grant("b", 2, 2); n != 1 {
		t.Fatalf("b got %d, want 1 (3 processors free)", n)
	}
	// Regranting keeps what one already holds.
	if n := b.grant("b", 1, 2); n != 1 {
		t.Fatalf("b regrant got %d, want 1", n)
	}
	freed = b.freed()
	b.release("a")
	select {
	case <-freed:
	default:
		t.Fatal("release did not signal")
	}
	if n := b.grant("c", 5, 1); n != 2 {
		t.Fatalf("c got %d, want 2 (b holds 2 of 4)", n)
	}
}
