"""One sync run: pull changes into the store, score, plan and write through the adapter."""
