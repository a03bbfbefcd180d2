//! The warehouse's wire format: SOAP envelopes in, typed calls out; answers and faults back.
//! No business rules live here.

pub mod envelope;
pub mod mask;
pub mod messages;

use quick_xml::escape::escape;

pub use envelope::{Envelope, Limits, SoapVersion};

/// A SOAP fault as the caller will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `Client`/`Server` (qualified with the envelope prefix on output) or a Magento numeric code.
    pub code: FaultCode,
    /// Human-readable reason, naming the field when a field is at fault.
    pub message: String,
}

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The request is wrong; sending it again will not help.
    Client,
    /// wharf could not store the request; sending it again later may help.
    Server,
    /// A Magento API fault code (2 access denied, 5 session expired), kept for M1 clients that test it.
    Magento(u8),
}

impl Fault {
    /// A Client fault.
    pub fn client(message: impl Into<String>) -> Fault {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
        }
    }
    /// A Server fault.
    pub fn server(message: impl Into<String>) -> Fault {
        Fault {
            code: FaultCode::Server,
            message: message.into(),
        }
    }
    /// Magento fault 2.
    pub fn access_denied() -> Fault {
        Fault {
            code: FaultCode::Magento(2),
            message: "Access denied.".into(),
        }
    }
    /// Magento fault 5.
    pub fn session_expired() -> Fault {
        Fault {
            code: FaultCode::Magento(5),
            message: "Session expired. Try to relogin.".into(),
        }
    }

    /// The fault envelope in the given SOAP version.
    pub fn to_xml(&self, version: SoapVersion) -> String {
        let msg = escape(self.message.as_str());
        match version {
            SoapVersion::V11 => {
                let code = match self.code {
                    FaultCode::Client => "SOAP-ENV:Client".to_string(),
                    FaultCode::Server => "SOAP-ENV:Server".to_string(),
                    FaultCode::Magento(n) => n.to_string(),
                };
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{ns}\"><SOAP-ENV:Body><SOAP-ENV:Fault>\
                     <faultcode>{code}</faultcode><faultstring>{msg}</faultstring>\
                     </SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>\n",
                    ns = envelope::SOAP11_NS
                )
            }
            SoapVersion::V12 => {
                let value = match self.code {
                    FaultCode::Server => "env:Receiver",
                    _ => "env:Sender",
                };
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <env:Envelope xmlns:env=\"{ns}\"><env:Body><env:Fault>\
                     <env:Code><env:Value>{value}</env:Value></env:Code>\
                     <env:Reason><env:Text xml:lang=\"en\">{msg}</env:Text></env:Reason>\
                     </env:Fault></env:Body></env:Envelope>\n",
                    ns = envelope::SOAP12_NS
                )
            }
        }
    }
}

/// Namespace of wharf's own document/literal WSDL, whose answers are namespace-qualified throughout.
pub const WHARF_NS: &str = "urn:wharf";

/// A successful answer: `<{element} xmlns:ns1="{namespace}"><{part}>{value}</{part}></{element}>`.
/// Magento's parts are unqualified; in wharf's own namespace (`elementFormDefault="qualified"`) the
/// part is qualified too.
pub fn response_xml(
    version: SoapVersion,
    namespace: &str,
    element: &str,
    part: &str,
    xsd_type: &str,
    value: &str,
) -> String {
    let part = if namespace == WHARF_NS {
        format!("ns1:{part}")
    } else {
        part.to_string()
    };
    let env_ns = match version {
        SoapVersion::V11 => envelope::SOAP11_NS,
        SoapVersion::V12 => envelope::SOAP12_NS,
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{env_ns}\" xmlns:ns1=\"{ns}\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><SOAP-ENV:Body>\
         <ns1:{element}><{part} xsi:type=\"xsd:{xsd_type}\">{value}</{part}></ns1:{element}>\
         </SOAP-ENV:Body></SOAP-ENV:Envelope>\n",
        ns = escape(namespace),
        value = escape(value),
    )
}

/// The name of the response element for an operation element, following each dialect: Magento 1
/// rpc `xResponse`, WS-I `xRequestParam` → `xResponseParam`, Magento 2 `xRequest` → `xResponse`.
pub fn response_element(operation: &str) -> String {
    // Magento 1's WS-I shipment answer really is named like this.
    if operation == "orderflowShipmentCreateRequestParam" {
        return "orderflowShipmentCreateRequestResponseParam".to_string();
    }
    if let Some(base) = operation.strip_suffix("RequestParam") {
        format!("{base}ResponseParam")
    } else if let Some(base) = operation.strip_suffix("Param") {
        format!("{base}ResponseParam")
    } else if let Some(base) = operation.strip_suffix("Request") {
        format!("{base}Response")
    } else {
        format!("{operation}Response")
    }
}

/// The acknowledgement text, exactly as OrderFlow expects it.
pub fn received_text(message_seq_id: i64) -> String {
    format!("Success - Message {message_seq_id} Received")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_elements_follow_each_dialect() {
        assert_eq!(
            response_element("orderflowInventoryMultiUpdate"),
            "orderflowInventoryMultiUpdateResponse"
        );
        assert_eq!(
            response_element("orderflowInventoryMultiUpdateRequestParam"),
            "orderflowInventoryMultiUpdateResponseParam"
        );
        assert_eq!(response_element("loginParam"), "loginResponseParam");
        assert_eq!(
            response_element("realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest"),
            "realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateResponse"
        );
    }

    #[test]
    fn faults_escape_their_text() {
        let xml = Fault::client("bad <value> & more").to_xml(SoapVersion::V11);
        assert!(xml.contains("<faultstring>bad &lt;value&gt; &amp; more</faultstring>"));
        assert!(xml.contains("<faultcode>SOAP-ENV:Client</faultcode>"));
    }
}
