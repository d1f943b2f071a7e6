"""CRM adapters: one package per CRM, plus the local sandbox CRMs; importing one never imports another."""
