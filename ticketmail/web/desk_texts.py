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
        "ich, niemand oder eine Adresse",
        "me, nobody or an address",
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
    "desk.message_id": ("Nachrichten-ID", "Message-ID"),
    "desk.in_reply_to": ("Antwort auf", "In-Reply-To"),
    "desk.direction.in": ("Kunde", "Customer"),
    "desk.direction.out": ("Support", "Support"),
    "desk.direction.note": ("Interne Notiz", "Internal note"),
    # Phone numbers and tickets taken by phone (SPEC 9.1).
    "desk.phone": ("Telefon", "Phone"),
    "desk.no_phone": ("keine Telefonnummer", "no phone number"),
    "desk.taken_for": ("aufgenommen für {requester}", "taken for {requester}"),
    "desk.new_title": ("Neues Ticket für einen Kunden", "New ticket for a customer"),
    "desk.new_hint": (
        "Für einen Anruf oder eine andere Anfrage, die weder per E-Mail noch über das Portal "
        "kam. Das Ticket gehört dem Kunden: Seine Einrichtung sieht es im Portal, Antworten "
        "gehen an ihn.",
        "For a call or another request that came neither by mail nor through the portal. The "
        "ticket is the customer's: their institution sees it in the portal, answers go to them.",
    ),
    "desk.new_requester_field": ("E-Mail-Adresse des Kunden", "Customer's email address"),
    "desk.new_body": ("Anliegen des Kunden", "The customer's request"),
    "desk.new_confirm": (
        "Eingangsbestätigung mit der Ticketnummer an den Kunden senden",
        "Send the customer the confirmation with the ticket number",
    ),
    "desk.new_caller": (
        "Noch nicht registriert? Kundennummer und Name legen den Benutzer an, ohne Passwort "
        "(er setzt es über „Passwort vergessen“). Eine Telefonnummer wird auch bei "
        "registrierten Benutzern gespeichert.",
        "Not registered yet? Customer number and name create the user, without a password "
        "(they set one through “Forgot your password”). A phone number is saved for "
        "registered users too.",
    ),
    "desk.new_submit": ("Ticket anlegen", "Open ticket"),
    "desk.new_requester": (
        "Bitte die E-Mail-Adresse des Kunden angeben.",
        "Please give the customer's email address.",
    ),
    "desk.new_required": (
        "Betreff und Anliegen dürfen nicht leer sein.",
        "Subject and request must not be empty.",
    ),
    "desk.new_unknown": (
        "Unter dieser Adresse ist niemand registriert. Für einen neuen Benutzer bitte "
        "Kundennummer und Name angeben.",
        "Nobody is registered at this address. For a new user please give the customer "
        "number and the name.",
    ),
    "desk.new_no_customer": (
        "Diese Kundennummer gibt es nicht.",
        "There is no such customer number.",
    ),
    "desk.new_agent": (
        "Das ist die Adresse eines Agenten, nicht die eines Kunden.",
        "That is an agent's address, not a customer's.",
    ),
    "desk.new_other_customer": (
        "Diese Adresse gehört zu einer anderen Einrichtung als der angegebenen.",
        "This address belongs to another institution than the one given.",
    ),
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
# --- text modules (SPEC 9.1, issue 23) ---------------------------------------------------------
DESK_TEXTS.update(
    {
        "desk.texts": ("Textbausteine", "Text modules"),
        "desk.texts_hint": (
            "Vorlagen für Antworten, je Sprache. Erlaubte Platzhalter:",
            "Canned answers, per language. Allowed placeholders:",
        ),
        "desk.texts_none": ("Noch keine Textbausteine.", "No text modules yet."),
        "desk.texts_new": ("Neuer Textbaustein", "New text module"),
        "desk.texts_title": ("Titel", "Title"),
        "desk.texts_body": ("Text", "Text"),
        "desk.texts_add": ("Textbaustein anlegen", "Add text module"),
        "desk.texts_delete": ("Löschen", "Delete"),
        "desk.texts_changed": ("Zuletzt geändert von {who}", "Last changed by {who}"),
        "desk.texts_added": ("Der Textbaustein wurde angelegt.", "The text module was added."),
        "desk.texts_saved": ("Der Textbaustein wurde gespeichert.", "The text module was saved."),
        "desk.texts_deleted": ("Der Textbaustein wurde gelöscht.", "The text module was deleted."),
        "desk.texts_bad_lang": (
            "Bitte wählen Sie Deutsch oder Englisch. Nichts wurde gespeichert.",
            "Please choose German or English. Nothing was saved.",
        ),
        "desk.texts_title_too_long": (
            "Der Titel ist länger als {count} Zeichen. Nichts wurde gespeichert.",
            "The title is longer than {count} characters. Nothing was saved.",
        ),
        "desk.texts_too_long": (
            "Der Text ist länger als {count} Zeichen. Nichts wurde gespeichert.",
            "The text is longer than {count} characters. Nothing was saved.",
        ),
        "desk.texts_placeholder": (
            "Nicht erlaubt: {found}. Erlaubt sind nur {allowed}. Nichts wurde gespeichert.",
            "Not allowed: {found}. The only placeholders are {allowed}. Nothing was saved.",
        ),
        "desk.texts_choose": ("Textbaustein", "Text module"),
        "desk.texts_insert": ("In die Antwort übernehmen", "Put into the answer"),
        "desk.texts_gone": (
            "Diesen Textbaustein gibt es nicht (mehr).",
            "There is no such text module (any more).",
        ),
    }
)
# --- presence: other agents on the ticket (SPEC 9.1, issue 23) ---------------------------------
DESK_TEXTS.update(
    {
        "desk.presence": ("Auch geöffnet von: {names}", "Also open by: {names}"),
        "desk.presence_typing": ("{name} (schreibt gerade)", "{name} (typing)"),
    }
)
# --- bulk actions on the queue (SPEC 9.1, issue 23) -------------------------------------------
DESK_TEXTS.update(
    {
        "desk.bulk_legend": (
            "Ausgewählte Tickets (höchstens {count})",
            "Chosen tickets (at most {count})",
        ),
        "desk.bulk_column": ("Auswahl", "Choose"),
        "desk.bulk_pick": ("Ticket {number} auswählen", "Choose ticket {number}"),
        "desk.bulk_action.assign": ("Zuweisen an", "Assign to"),
        "desk.bulk_action.status": ("Status setzen", "Set status"),
        "desk.bulk_action.merge": ("Zusammenführen in", "Merge into"),
        "desk.bulk_into": ("Ticketnummer", "Ticket number"),
        "desk.bulk_apply": ("Ausführen", "Apply"),
        "desk.bulk_changed_one": ("1 Ticket wurde geändert.", "1 ticket was changed."),
        "desk.bulk_changed": ("{count} Tickets wurden geändert.", "{count} tickets were changed."),
        "desk.bulk_same_count": (
            "{count} waren schon so und blieben unverändert.",
            "{count} already were so and stayed unchanged.",
        ),
        "desk.bulk_title": ("Mehrere Tickets", "Several tickets"),
        "desk.bulk_skipped": (
            "Diese Tickets haben sich geändert, seit Sie die Liste geladen haben, und wurden "
            "übersprungen; bitte prüfen Sie sie:",
            "These tickets changed since you loaded the queue and were skipped; please check them:",
        ),
        "desk.bulk_done": ("Geändert:", "Changed:"),
        "desk.bulk_no_ticket": ("kein Ticket", "no ticket"),
        "desk.bulk_same": ("Schon so, unverändert:", "Already so, unchanged:"),
        "desk.bulk_back": ("Zurück zur Liste", "Back to the queue"),
        "desk.bulk_none": (
            "Bitte wählen Sie mindestens ein Ticket. Nichts wurde geändert.",
            "Please choose at least one ticket. Nothing was changed.",
        ),
        "desk.bulk_no_action": (
            "Bitte wählen Sie, was mit den Tickets geschehen soll. Nichts wurde geändert.",
            "Please choose what to do with the tickets. Nothing was changed.",
        ),
        "desk.bulk_unavailable": (
            "Zusammenführen ist in der Liste noch nicht möglich. Nichts wurde geändert.",
            "Merging is not available in the queue yet. Nothing was changed.",
        ),
        "desk.bulk_no_such_agent": (
            "Diesen Agenten gibt es nicht. Nichts wurde geändert.",
            "There is no such agent. Nothing was changed.",
        ),
        "desk.bulk_bad_status": (
            "Bitte wählen Sie einen Status. Nichts wurde geändert.",
            "Please choose a status. Nothing was changed.",
        ),
        "desk.bulk_too_many": (
            "Höchstens {count} Tickets auf einmal. Nichts wurde geändert.",
            "At most {count} tickets at once. Nothing was changed.",
        ),
        "desk.bulk_not_a_ticket": (
            "Kein Ticket: {numbers}. Nichts wurde geändert.",
            "Not a ticket: {numbers}. Nothing was changed.",
        ),
        "desk.bulk_unseen": (
            "Das Formular nannte keinen Stand von Ticket {numbers}. Nichts wurde geändert; "
            "bitte laden Sie die Liste neu.",
            "The form named no state of ticket {numbers}. Nothing was changed; please load "
            "the queue again.",
        ),
    }
)
# --- merge (SPEC 9.1, issue 23) ----------------------------------------------------------------
DESK_TEXTS.update(
    {
        "status.merged": ("zusammengeführt", "merged"),
        "desk.merge": ("Zusammenführen", "Merge"),
        "desk.merge_hint": (
            "Führt dieses Ticket in ein anderes Ticket derselben Einrichtung zusammen: seine "
            "Nachrichten und Dateien stehen dann dort, dieses Ticket ist danach nur noch lesbar. "
            "Der Kunde bekommt darüber keine Mail.",
            "Merges this ticket into another ticket of the same institution: its messages and "
            "files then stand there, and this ticket is read-only from then on. The customer "
            "gets no mail about it.",
        ),
        "desk.merge_into": ("In Ticket Nummer", "Into ticket number"),
        "desk.merge_submit": ("Zusammenführen", "Merge"),
        "desk.merge_no_number": (
            "Bitte geben Sie die Nummer des Tickets an, in das zusammengeführt werden soll. "
            "Nichts wurde geändert.",
            "Please give the number of the ticket to merge into. Nothing was changed.",
        ),
        "desk.merge_missing": (
            "Ein Ticket mit dieser Nummer gibt es nicht. Nichts wurde geändert.",
            "There is no ticket with that number. Nothing was changed.",
        ),
        "desk.merge_self": (
            "Ein Ticket kann nicht in sich selbst zusammengeführt werden. Nichts wurde geändert.",
            "A ticket cannot be merged into itself. Nothing was changed.",
        ),
        "desk.merge_institutions": (
            "Die beiden Tickets gehören zu verschiedenen Einrichtungen; solche Tickets werden "
            "nie zusammengeführt. Nichts wurde geändert.",
            "The two tickets belong to different institutions; such tickets are never merged. "
            "Nothing was changed.",
        ),
        "desk.merge_into_merged": (
            "Das Ziel wurde selbst schon in ein anderes Ticket zusammengeführt; führen Sie in "
            "jenes zusammen. Nichts wurde geändert.",
            "The target was itself merged into another ticket; merge into that one. Nothing "
            "was changed.",
        ),
        "desk.merge_source_merged": (
            "Dieses Ticket wurde schon zusammengeführt. Nichts wurde geändert.",
            "This ticket was merged already. Nothing was changed.",
        ),
        "desk.merged_title": ("Ticket zusammengeführt", "Ticket merged"),
        "desk.merged_source": (
            "Dieses Ticket wurde in ein anderes zusammengeführt und ist nur noch lesbar. Nichts "
            "wurde ausgeführt; was Sie eingegeben haben, bitte im Ticket unten erneut senden.",
            "This ticket was merged into another one and is read-only. Nothing was done; "
            "please send what you typed again on the ticket below.",
        ),
    }
)
# --- waiting until a time (SPEC 9.1, issue 23) -------------------------------------------------
DESK_TEXTS.update(
    {
        "status.waiting": ("wartet", "waiting"),
        "desk.waiting_until": ("bis {when}", "until {when}"),
        "desk.until": ("Wartet bis (nur für „wartet“)", "Waiting until (for “waiting” only)"),
        "desk.until_hint": (
            "Datum und Uhrzeit in {zone}. Dann ist das Ticket wieder in Bearbeitung und "
            "der Zuständige wird erinnert; schreibt der Kunde vorher, endet das Warten sofort.",
            "Date and time in {zone}. Then the ticket is in progress again and its owner is "
            "reminded; if the customer writes before, the wait ends at once.",
        ),
        "desk.until_missing": (
            "Bis wann soll das Ticket warten? Bitte Datum und Uhrzeit angeben. Nichts wurde "
            "geändert.",
            "Until when should the ticket wait? Please give a date and time. Nothing was changed.",
        ),
        "desk.until_bad": (
            "Das ist keine Zeitangabe (Datum und Uhrzeit, z. B. 2026-12-24T09:30). Nichts "
            "wurde geändert.",
            "That is not a time (a date and time, e.g. 2026-12-24T09:30). Nothing was changed.",
        ),
        "desk.until_past": (
            "Diese Zeit ist schon vorbei; ein Ticket kann nur bis zu einer künftigen Zeit "
            "warten. Nichts wurde geändert.",
            "That time has passed; a ticket can only wait until a time to come. Nothing was "
            "changed.",
        ),
        "desk.until_far": (
            "Diese Zeit liegt mehr als fünf Jahre voraus. Nichts wurde geändert.",
            "That time is more than five years ahead. Nothing was changed.",
        ),
    }
)
# --- no English word in the German desk, and the reverse (SPEC 9.1, issue 23) ---------------
DESK_TEXTS.update(
    {
        "desk.day_format": ("JJJJ-MM-TT", "YYYY-MM-DD"),
        "desk.bad_day": (
            "{field}: „{text}“ ist kein Datum (JJJJ-MM-TT). Nichts wurde gespeichert.",
            "{field}: “{text}” is not a date (YYYY-MM-DD). Nothing was saved.",
        ),
        "desk.bad_domain": (
            "„{text}“ ist keine Mail-Domain. Nichts wurde gespeichert.",
            "“{text}” is not a mail domain. Nothing was saved.",
        ),
        "desk.note_portal": ("{line} (von {who} im Portal)", "{line} (by {who} in the portal)"),
        "desk.lang.de": ("Deutsch", "German"),
        "desk.lang.en": ("Englisch", "English"),
    }
)
# --- accessibility: axe-core finds no violation (SPEC 8.3, issue 24) ---------------------------
DESK_TEXTS.update(
    {
        "desk.decision": ("Entscheidung", "Decision"),
    }
)
# --- the line confirming each action, the pending registrations' count (issue 24, flash) ---
DESK_TEXTS.update(
    {
        "desk.done_reply": ("Die Antwort wurde gesendet.", "The answer was sent."),
        "desk.done_note": ("Die interne Notiz wurde gespeichert.", "The internal note was saved."),
        "desk.done_status": ("Der Status wurde gespeichert.", "The status was saved."),
        "desk.done_waiting": ("Die Wartezeit wurde gespeichert.", "The waiting time was saved."),
        "desk.done_assign": ("Die Zuständigkeit wurde gespeichert.", "The owner was saved."),
        "desk.done_merge": (
            "Die Tickets wurden zusammengeführt; dies ist das Ziel.",
            "The tickets were merged; this is the one they were merged into.",
        ),
        "desk.done_settings": (
            "Ihre Einstellungen wurden gespeichert.",
            "Your settings were saved.",
        ),
        "desk.done_approved": (
            "Die Registrierung wurde freigegeben.",
            "The registration was approved.",
        ),
        "desk.done_rejected": (
            "Die Registrierung wurde abgelehnt.",
            "The registration was rejected.",
        ),
        "desk.done_institution": (
            "Die Einrichtung wurde gespeichert.",
            "The institution was saved.",
        ),
        "desk.done_taken": ("Das Ticket wurde angelegt.", "The ticket was opened."),
        "desk.registrations_count": ("Registrierungen ({count})", "Registrations ({count})"),
    }
)
# --- a queue that fills the screen, and keys (issue 24, helper queue) -------------------------
DESK_TEXTS.update(
    {
        "desk.keys_hint": ("Tasten (?)", "Keys (?)"),
        "desk.keys_title": ("Tasten im Desk", "Keys in the desk"),
        "desk.keys_move": (
            "zum nächsten / vorigen Ticket der Liste",
            "to the next / previous ticket in the list",
        ),
        "desk.keys_enter": ("Eingabe", "Enter"),
        "desk.keys_open": ("das markierte Ticket öffnen", "open the highlighted ticket"),
        "desk.keys_answer": ("im Ticket: ins Antwortfeld", "on a ticket: to the answer"),
        "desk.keys_note": ("im Ticket: ins Notizfeld", "on a ticket: to the note"),
        "desk.keys_help": ("diese Liste zeigen oder schließen", "show or close this list"),
        "desk.keys_typing": (
            "Während Sie in ein Feld schreiben oder Strg, Alt oder Meta halten, wirkt keine "
            "dieser Tasten.",
            "None of these keys acts while you type in a field or hold Ctrl, Alt or Meta.",
        ),
        "desk.keys_close": ("Schließen", "Close"),
    }
)
