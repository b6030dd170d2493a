"""The payment service: charges and refunds through the payment gateway."""
