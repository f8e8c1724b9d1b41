"""The desk's texts in German and English, side by side (merged into the web's catalogue)."""

from __future__ import annotations

__all__ = ["DESK_TEXTS"]

DESK_TEXTS: dict[str, tuple[str, str]] = {
    "desk.brand": ("Support-Desk", "Support desk"),
    "desk.queue": ("Warteschlange", "Queue"),
    "desk.registrations": ("Registrierungen", "Registrations"),
    "desk.customers": ("Einrichtungen", "Institutions"),
    "desk.settings": ("Einstellungen", "Settings"),
    "desk.customer": ("Einrichtung (Kundennummer)", "Institution (customer number)"),
    "desk.assignee": ("Zuständig", "Owner"),
    "desk.assignee_hint": (
        "me, none oder eine Adresse",
        "me, none or an address",
    ),
    "desk.nobody_assigned": ("niemand", "nobody"),
    "desk.search_hint": (
        "Nummer, Adresse, Betreff oder Text",
        "Number, address, subject or text",
    ),
    "desk.search_bounded": (
        "Mehr als {n} Artikel enthalten diese Wörter; gezählt und gezeigt sind die Tickets "
        "der neuesten {n}. Ein weiteres Wort oder eine Einrichtung grenzt die Suche ein.",
        "More than {n} articles contain these words; counted and shown are the tickets of the "
        "newest {n}. Another word or an institution narrows the search.",
    ),
    "desk.articles": ("Verlauf", "History"),
    "desk.raw": ("Originalnachricht", "Raw message"),
    "desk.automatic": ("automatisch", "automatic"),
    "desk.note": ("Interne Notiz", "Internal note"),
    "desk.note_submit": ("Notiz speichern", "Save note"),
    "desk.note_hint": (
        "Nur für das Team: wird nie gemailt und Kunden nie gezeigt.",
        "For the team only: never mailed, never shown to customers.",
    ),
    "desk.reply": ("Antworten", "Answer"),
    "desk.reply_text": ("Antwort an den Kunden", "Answer to the customer"),
    "desk.reply_submit": ("Antwort senden", "Send answer"),
    "desk.status_after": ("Status danach", "Status afterwards"),
    "desk.change_status": ("Status ändern", "Change status"),
    "desk.status_note": ("Hinweis an den Kunden (optional)", "Note to the customer (optional)"),
    "desk.status_submit": ("Status setzen", "Set status"),
    "desk.assign": ("Zuständigkeit", "Owner"),
    "desk.assign_submit": ("Zuweisen", "Assign"),
    "desk.institution": ("Einrichtung", "Institution"),
    "desk.contract": ("Vertrag bis", "Contract until"),
    "desk.trial": ("Testphase bis", "Trial until"),
    "desk.supported": ("Support aktiv", "Support active"),
    "desk.unsupported": (
        "Kein Vertrag und keine Testphase",
        "No contract and no trial",
    ),
    "desk.other_tickets": ("Weitere Tickets", "Other tickets"),
    "desk.domains": ("Mail-Domains (durch Komma getrennt)", "Mail domains (comma-separated)"),
    "desk.users": ("Benutzer", "Users"),
    "desk.save": ("Speichern", "Save"),
    "desk.pending_none": ("Keine Registrierung wartet.", "No registration is waiting."),
    "desk.approve": ("Freigeben", "Approve"),
    "desk.reject": ("Ablehnen", "Reject"),
    "desk.registered": ("Registriert", "Registered"),
    "desk.notify": (
        "Benachrichtigungen per E-Mail erhalten",
        "Receive notifications by email",
    ),
    "desk.nobody": (
        "Niemand würde diese Antwort erhalten (kein registrierter Benutzer am Ticket). Nichts wurde gesendet.",
        "Nobody would receive this answer (no registered user on the ticket). Nothing was sent.",
    ),
    "desk.no_such_agent": ("Diesen Agenten gibt es nicht.", "There is no such agent."),
    "desk.headers": ("Kopfzeilen", "Headers"),
    "desk.to": ("An", "To"),
    "desk.date": ("Datum", "Date"),
    "desk.message_id": ("Message-ID", "Message-ID"),
    "desk.in_reply_to": ("In-Reply-To", "In-Reply-To"),
    "desk.direction.in": ("Kunde", "Customer"),
    "desk.direction.out": ("Support", "Support"),
    "desk.direction.note": ("Notiz", "Note"),
    # --- a desk for a team (SPEC 9.1): stale forms, the ticket's history ---
    "desk.stale": (
        "Das Ticket hat sich geändert, seit Sie die Seite geladen haben. Nichts wurde "
        "ausgeführt. Ihre Eingabe steht unten; prüfen Sie die Änderungen und senden Sie "
        "erneut. Angehängte Dateien bitte erneut auswählen.",
        "The ticket has changed since you loaded the page. Nothing was done. What you typed "
        "is below; check the changes and send again. Please choose attached files again.",
    ),
    "desk.unseen": (
        "Das Formular nannte keinen Stand des Tickets. Nichts wurde ausgeführt. Ihre Eingabe "
        "steht unten; prüfen Sie das Ticket und senden Sie erneut.",
        "The form named no state of the ticket. Nothing was done. What you typed is below; "
        "check the ticket and send again.",
    ),
    "desk.changed_since": ("Seitdem geändert", "Changed since"),
    "desk.history.status": ("Status: {old} → {new}", "Status: {old} → {new}"),
    "desk.history.owner": ("Zuständig: {old} → {new}", "Owner: {old} → {new}"),
    "desk.history.merge": ("Zusammengeführt: {old} → {new}", "Merged: {old} → {new}"),
    "desk.history.waiting": ("Wartet bis: {old} → {new}", "Waiting until: {old} → {new}"),
    "desk.history.system": ("automatisch", "automatic"),
}
