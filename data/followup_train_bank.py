"""Hand-written follow-ups for *training* a context reading, by the intent of the message they follow.

Written on 2026-12-06 without reading the test half of ``conversations.csv`` (the evaluation set): a follow-up
here is what a customer might write next after a question of that intent, labelled with the intent it asks
about. ``benchmarks/followups_train_bank.py`` pairs each with ticket questions (the BANKING77 train split) of
the intent it follows and leaves out exact copies of evaluation follow-ups (28, generic ones such as "is there a
fee?"). Not used by ``csbot train``: measured, not adopted (README, Conversations).
"""

BANK: dict[str, list[tuple[str, str]]] = {
    "activate_my_card": [
        ("ok done, now what's my pin?", "get_physical_card"),
        ("it says activation failed", "card_not_working"),
        ("can i use it with google pay after that?", "apple_pay_or_google_pay"),
    ],
    "age_limit": [
        ("so can my 12 year old have one?", "age_limit"),
        ("what documents would he need?", "verify_my_identity"),
        ("and is it available where we live, in brazil?", "country_support"),
    ],
    "apple_pay_or_google_pay": [
        ("i added it but it gets declined at the till", "declined_card_payment"),
        ("does it work for top ups too?", "topping_up_by_card"),
        ("what about contactless without my phone?", "contactless_not_working"),
    ],
    "atm_support": [
        ("will i be charged for using them?", "cash_withdrawal_charge"),
        ("and abroad, what rate do you use?", "wrong_exchange_rate_for_cash_withdrawal"),
        ("the machine kept my card though", "card_swallowed"),
    ],
    "automatic_top_up": [
        ("is there a fee each time it tops up?", "top_up_by_card_charge"),
        ("what's the most it can add?", "top_up_limits"),
        ("it didn't trigger yesterday", "top_up_failed"),
    ],
    "balance_not_updated_after_bank_transfer": [
        ("how long should it normally take?", "transfer_timing"),
        ("the sender says it left their account", "balance_not_updated_after_bank_transfer"),
        ("it still says pending", "pending_transfer"),
    ],
    "balance_not_updated_after_cheque_or_cash_deposit": [
        ("can i even top up with a cheque?", "top_up_by_cash_or_cheque"),
        ("it's been a week now", "balance_not_updated_after_cheque_or_cash_deposit"),
        ("would a bank transfer be faster?", "transfer_into_account"),
    ],
    "beneficiary_not_allowed": [
        ("so how long before i can send to them?", "transfer_timing"),
        ("the transfer was declined as well", "declined_transfer"),
        ("can i cancel the one i already tried?", "cancel_transfer"),
    ],
    "cancel_transfer": [
        ("will i get the money back then?", "cancel_transfer"),
        ("do you charge for that?", "transfer_fee_charged"),
        ("it already shows as completed", "transfer_not_received_by_recipient"),
    ],
    "card_about_to_expire": [
        ("how long will the replacement take?", "card_delivery_estimate"),
        ("is the new one free?", "order_physical_card"),
        ("can you send it to me in canada?", "country_support"),
    ],
    "card_acceptance": [
        ("do i pay anything when i use it abroad?", "card_payment_fee_charged"),
        ("a shop refused it today", "declined_card_payment"),
        ("and at cash machines?", "atm_support"),
    ],
    "card_arrival": [
        ("how long does delivery usually take?", "card_delivery_estimate"),
        ("maybe it got lost in the post, can you send another?", "lost_or_stolen_card"),
        ("it came, how do i turn it on?", "activate_my_card"),
    ],
    "card_delivery_estimate": [
        ("can i track it?", "card_arrival"),
        ("do you deliver to australia?", "country_support"),
        ("is it free to order?", "order_physical_card"),
    ],
    "card_linking": [
        ("the app says it's already linked to someone else", "card_linking"),
        ("once it's linked, how do i top up with it?", "topping_up_by_card"),
        ("is there a charge for topping up that way?", "top_up_by_card_charge"),
    ],
    "card_not_working": [
        ("it's just contactless that fails", "contactless_not_working"),
        ("the atm rejects it too", "declined_cash_withdrawal"),
        ("should i order a new one?", "order_physical_card"),
    ],
    "card_payment_fee_charged": [
        ("is it because it was in dollars?", "card_payment_fee_charged"),
        ("and the rate looked wrong as well", "card_payment_wrong_exchange_rate"),
        ("there's another extra pound on my statement", "extra_charge_on_statement"),
    ],
    "card_payment_not_recognised": [
        ("should i block the card?", "compromised_card"),
        ("how do i get my money back?", "request_refund"),
        ("there's a cash withdrawal i don't know either", "cash_withdrawal_not_recognised"),
    ],
    "card_payment_wrong_exchange_rate": [
        ("what rate should i have got?", "exchange_rate"),
        ("and you charged a fee on top", "card_payment_fee_charged"),
        ("same thing happened at an atm", "wrong_exchange_rate_for_cash_withdrawal"),
    ],
    "card_swallowed": [
        ("how do i get a new one?", "order_physical_card"),
        ("how long will that take to arrive?", "card_delivery_estimate"),
        ("could someone use it now?", "compromised_card"),
    ],
    "cash_withdrawal_charge": [
        ("how much can i take out for free?", "cash_withdrawal_charge"),
        ("the rate was bad too", "wrong_exchange_rate_for_cash_withdrawal"),
        ("and i got less cash than i asked for", "wrong_amount_of_cash_received"),
    ],
    "cash_withdrawal_not_recognised": [
        ("my card is still in my wallet", "compromised_card"),
        ("can i get that money refunded?", "cash_withdrawal_not_recognised"),
        ("freeze the card please", "lost_or_stolen_card"),
    ],
    "change_pin": [
        ("i don't know the current one though", "get_physical_card"),
        ("it's blocked after three tries", "pin_blocked"),
        ("can i use any cash machine for that?", "change_pin"),
    ],
    "compromised_card": [
        ("how do i get a replacement?", "order_physical_card"),
        ("there's a payment i never made", "card_payment_not_recognised"),
        ("they also took cash out", "cash_withdrawal_not_recognised"),
    ],
    "contactless_not_working": [
        ("chip and pin is fine though", "contactless_not_working"),
        ("what about paying with my phone?", "apple_pay_or_google_pay"),
        ("now it doesn't work at all", "card_not_working"),
    ],
    "country_support": [
        ("can you deliver a card there?", "card_delivery_estimate"),
        ("which currencies can i hold?", "fiat_currency_support"),
        ("and can i get my salary paid in?", "receiving_money"),
    ],
    "declined_card_payment": [
        ("it went through on the second try but i see two charges", "transaction_charged_twice"),
        ("now it shows as pending", "pending_card_payment"),
        ("the money came back to my account, why?", "reverted_card_payment?"),
    ],
    "declined_cash_withdrawal": [
        ("but my balance shows it as pending", "pending_cash_withdrawal"),
        ("i got charged anyway", "cash_withdrawal_charge"),
        ("it gave me part of the money", "wrong_amount_of_cash_received"),
    ],
    "declined_transfer": [
        ("the recipient isn't allowed?", "beneficiary_not_allowed"),
        ("i tried again and it failed", "failed_transfer"),
        ("do i still pay the fee?", "transfer_fee_charged"),
    ],
    "direct_debit_payment_not_recognised": [
        ("can i get it back?", "request_refund"),
        ("there's a card payment i don't know too", "card_payment_not_recognised"),
        ("should i cancel my card?", "compromised_card"),
    ],
    "disposable_card_limits": [
        ("how do i make another one?", "get_disposable_virtual_card"),
        ("mine was refused at checkout", "virtual_card_not_working"),
        ("is there a fee per card?", "getting_spare_card"),
    ],
    "edit_personal_details": [
        ("do i need to verify again after?", "verify_my_identity"),
        ("i changed my phone number too", "edit_personal_details"),
        ("what if i just close the account instead?", "terminate_account"),
    ],
    "exchange_charge": [
        ("what rate do you use?", "exchange_rate"),
        ("can i do it in the app?", "exchange_via_app"),
        ("which currencies?", "fiat_currency_support"),
    ],
    "exchange_rate": [
        ("is there a fee on top?", "exchange_charge"),
        ("where in the app do i exchange?", "exchange_via_app"),
        ("the rate on my card payment was different", "card_payment_wrong_exchange_rate"),
    ],
    "exchange_via_app": [
        ("what does it cost?", "exchange_charge"),
        ("is the rate live?", "exchange_rate"),
        ("can i hold crypto too?", "fiat_currency_support"),
    ],
    "extra_charge_on_statement": [
        ("was it a card fee?", "card_payment_fee_charged"),
        ("it happened after a top up", "top_up_by_card_charge"),
        ("it was after my transfer", "transfer_fee_charged"),
    ],
    "failed_transfer": [
        ("is the money gone?", "failed_transfer"),
        ("it says the beneficiary isn't allowed", "beneficiary_not_allowed"),
        ("was i charged for it?", "transfer_fee_charged"),
    ],
    "fiat_currency_support": [
        ("can i exchange between them?", "exchange_via_app"),
        ("and which cards can i top up with?", "supported_cards_and_currencies"),
        ("can people pay me in those?", "receiving_money"),
    ],
    "get_disposable_virtual_card": [
        ("how many can i use it for?", "disposable_card_limits"),
        ("it won't work online", "virtual_card_not_working"),
        ("where do i see the card details?", "getting_virtual_card"),
    ],
    "get_physical_card": [
        ("i typed it wrong and now it's locked", "pin_blocked"),
        ("can i change it to something easier?", "change_pin"),
        ("the card still isn't active", "activate_my_card"),
    ],
    "getting_spare_card": [
        ("how long would it take to come?", "card_delivery_estimate"),
        ("can i make it a virtual one?", "getting_virtual_card"),
        ("will it work with apple pay?", "apple_pay_or_google_pay"),
    ],
    "getting_virtual_card": [
        ("is it free?", "getting_virtual_card"),
        ("can i get a one-time one?", "get_disposable_virtual_card"),
        ("it doesn't work for subscriptions", "virtual_card_not_working"),
    ],
    "lost_or_stolen_card": [
        ("how soon can i get a new one?", "card_delivery_estimate"),
        ("someone already spent money with it", "card_payment_not_recognised"),
        ("i found it again, can i use it?", "card_linking"),
    ],
    "lost_or_stolen_phone": [
        ("can i log in from my laptop?", "lost_or_stolen_phone"),
        ("i don't remember my passcode", "passcode_forgotten"),
        ("should i freeze my card too?", "lost_or_stolen_card"),
    ],
    "order_physical_card": [
        ("how long till it gets here?", "card_delivery_estimate"),
        ("can i pick visa or mastercard?", "visa_or_mastercard"),
        ("and where is my pin?", "get_physical_card"),
    ],
    "passcode_forgotten": [
        ("my phone got stolen so i can't open the app", "lost_or_stolen_phone"),
        ("do i have to verify my id again?", "verify_my_identity"),
        ("it's the card pin i forgot actually", "get_physical_card"),
    ],
    "pending_card_payment": [
        ("it finally went through but twice", "transaction_charged_twice"),
        ("now it's disappeared", "reverted_card_payment?"),
        ("the shop says it was declined", "declined_card_payment"),
    ],
    "pending_cash_withdrawal": [
        ("the atm said it failed", "declined_cash_withdrawal"),
        ("i got the cash but less than shown", "wrong_amount_of_cash_received"),
        ("do i pay a fee for it?", "cash_withdrawal_charge"),
    ],
    "pending_top_up": [
        ("it failed in the end", "top_up_failed"),
        ("why is it asking me to verify it?", "verify_top_up"),
        ("the money went back to my card", "top_up_reverted"),
    ],
    "pending_transfer": [
        ("how long does that usually last?", "pending_transfer"),
        ("the other person hasn't got it", "transfer_not_received_by_recipient"),
        ("can i cancel it while it's pending?", "cancel_transfer"),
    ],
    "pin_blocked": [
        ("where do i find the pin in the first place?", "get_physical_card"),
        ("can i choose a new one?", "change_pin"),
        ("the card doesn't work at all now", "card_not_working"),
    ],
    "receiving_money": [
        ("what details do i give them?", "transfer_into_account"),
        ("the money hasn't arrived yet", "balance_not_updated_after_bank_transfer"),
        ("in which currencies?", "receiving_money"),
    ],
    "Refund_not_showing_up": [
        ("how long should refunds take?", "Refund_not_showing_up"),
        ("the seller says it was sent last week", "Refund_not_showing_up"),
        ("can i ask you for the refund instead?", "request_refund"),
    ],
    "request_refund": [
        ("it's been ages and the refund isn't there", "Refund_not_showing_up"),
        ("the payment isn't one i made anyway", "card_payment_not_recognised"),
        ("i was charged twice for it", "transaction_charged_twice"),
    ],
    "reverted_card_payment?": [
        ("was it declined?", "declined_card_payment"),
        ("it's back to pending now", "pending_card_payment"),
        ("so will i get a refund?", "request_refund"),
    ],
    "supported_cards_and_currencies": [
        ("does it cost anything to top up by card?", "top_up_by_card_charge"),
        ("how do i top up with it?", "topping_up_by_card"),
        ("which currencies can i keep?", "fiat_currency_support"),
    ],
    "terminate_account": [
        ("what happens to my balance?", "terminate_account"),
        ("maybe i'll just update my details", "edit_personal_details"),
        ("do i need to send my card back?", "terminate_account"),
    ],
    "top_up_by_bank_transfer_charge": [
        ("how long does it take to arrive?", "balance_not_updated_after_bank_transfer"),
        ("what details do i use?", "transfer_into_account"),
        ("and by card?", "top_up_by_card_charge"),
    ],
    "top_up_by_card_charge": [
        ("and by bank transfer?", "top_up_by_bank_transfer_charge"),
        ("what's the maximum i can add?", "top_up_limits"),
        ("which cards can i use?", "supported_cards_and_currencies"),
    ],
    "top_up_by_cash_or_cheque": [
        ("i deposited one and it's not there", "balance_not_updated_after_cheque_or_cash_deposit"),
        ("is a transfer better?", "transfer_into_account"),
        ("is there a limit?", "top_up_limits"),
    ],
    "top_up_failed": [
        ("is my card supported?", "supported_cards_and_currencies"),
        ("it's been reversed back to my card", "top_up_reverted"),
        ("now it's just pending", "pending_top_up"),
    ],
    "top_up_limits": [
        ("is there a fee?", "top_up_by_card_charge"),
        ("can it happen automatically?", "automatic_top_up"),
        ("can i go over it by bank transfer?", "transfer_into_account"),
    ],
    "top_up_reverted": [
        ("will it happen again?", "top_up_reverted"),
        ("i was charged for it", "top_up_by_card_charge"),
        ("it said it failed", "top_up_failed"),
    ],
    "topping_up_by_card": [
        ("it didn't work", "top_up_failed"),
        ("what fee is there?", "top_up_by_card_charge"),
        ("it wants me to verify it", "verify_top_up"),
    ],
    "transaction_charged_twice": [
        ("one of them is still pending", "pending_card_payment"),
        ("can i get the second one refunded?", "transaction_charged_twice"),
        ("and there's an extra small charge", "extra_charge_on_statement"),
    ],
    "transfer_fee_charged": [
        ("how long will it take to get there?", "transfer_timing"),
        ("and it hasn't even arrived", "transfer_not_received_by_recipient"),
        ("the rate was off too", "exchange_rate"),
    ],
    "transfer_into_account": [
        ("is it free?", "top_up_by_bank_transfer_charge"),
        ("i sent it yesterday and it's not there", "balance_not_updated_after_bank_transfer"),
        ("can i do it from abroad?", "receiving_money"),
    ],
    "transfer_not_received_by_recipient": [
        ("it shows as pending still", "pending_transfer"),
        ("can i cancel it?", "cancel_transfer"),
        ("how long do they normally take?", "transfer_timing"),
    ],
    "transfer_timing": [
        ("it's been longer than that", "transfer_not_received_by_recipient"),
        ("is there a fee?", "transfer_fee_charged"),
        ("it says pending", "pending_transfer"),
    ],
    "unable_to_verify_identity": [
        ("why do you need it anyway?", "why_verify_identity"),
        ("which documents count?", "verify_my_identity"),
        ("can i still use my account meanwhile?", "why_verify_identity"),
    ],
    "verify_my_identity": [
        ("it keeps rejecting my photo", "unable_to_verify_identity"),
        ("why is this needed?", "why_verify_identity"),
        ("do i also have to prove where my money comes from?", "verify_source_of_funds"),
    ],
    "verify_source_of_funds": [
        ("what documents work?", "verify_source_of_funds"),
        ("why do you need this?", "why_verify_identity"),
        ("it won't accept my payslip", "unable_to_verify_identity"),
    ],
    "verify_top_up": [
        ("where's the code?", "verify_top_up"),
        ("it failed anyway", "top_up_failed"),
        ("it's still pending", "pending_top_up"),
    ],
    "virtual_card_not_working": [
        ("how many times can a disposable one be used?", "disposable_card_limits"),
        ("can i get a new one?", "get_disposable_virtual_card"),
        ("the physical one works though", "virtual_card_not_working"),
    ],
    "visa_or_mastercard": [
        ("how do i order it?", "order_physical_card"),
        ("will it work everywhere?", "card_acceptance"),
        ("and which currencies?", "supported_cards_and_currencies"),
    ],
    "why_verify_identity": [
        ("ok, how do i do it?", "verify_my_identity"),
        ("it failed already", "unable_to_verify_identity"),
        ("what about source of funds?", "verify_source_of_funds"),
    ],
    "wrong_amount_of_cash_received": [
        ("and i was charged a fee", "cash_withdrawal_charge"),
        ("the rate was wrong as well", "wrong_exchange_rate_for_cash_withdrawal"),
        ("it's still pending in the app", "pending_cash_withdrawal"),
    ],
    "wrong_exchange_rate_for_cash_withdrawal": [
        ("and a fee too?", "cash_withdrawal_charge"),
        ("what rate do you use?", "exchange_rate"),
        ("my card payments had the same problem", "card_payment_wrong_exchange_rate"),
    ],
}
